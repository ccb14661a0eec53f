"""Access control: who may read which patient data (bearer JWTs with SMART on FHIR scopes, or
API keys), checked at the app's boundary before any lookup reaches a pattern."""
