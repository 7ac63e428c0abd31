"""The promote stage: `rules` (pure: holdout answers in, a decision out) and `promote` (score
challenger and champion on the same holdout, move the aliases, write the audit record)."""
