"""The performance benchmark behind `schedule-consumer bench` (needs the dev extras)."""
