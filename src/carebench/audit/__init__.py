"""Audit: one record per access attempt to patient data (who, which ids, what came of it, why),
written off the event loop; a request whose record cannot be kept is refused, not served."""
