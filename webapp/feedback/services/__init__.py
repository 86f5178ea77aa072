"""Writes of the feedback loop, one module per job: `promotions` (submissions copied into the registry's
references), `field` (field predictions for a head's field accuracy), `clusters` (the unknown pile's
maintained clustering and registering a cluster as a new generator)."""
