"""Searches over load tests: the best static setting of a pattern (`carebench tune`) and the
highest rate a pattern sustains within an SLO (`carebench capacity`)."""
