"""Research probes: one experiment each on a seed's English model (`python -m probes.NAME`)."""
