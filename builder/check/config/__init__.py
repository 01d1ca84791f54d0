"""The configuration gate: a Postfix configuration directory checked for 3.11 migration traps."""
