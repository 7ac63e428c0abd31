"""The promote stage: `rules` (pure: holdout answers in, a decision out) and `promote` (score
challenger and champion on the same holdout, crown the winner through `model.aliases`, write
the audit record)."""
