"""Backend faults on a schedule (`--faults`): outages, slowdowns and error bursts injected
around any backend, so a run can replay a brown-out against each pattern."""
