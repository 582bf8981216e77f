"""The contracts between the operator and the programs its Jobs run, one typed model each,
used by both sides: the result line a Job prints when it ends."""
