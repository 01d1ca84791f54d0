"""A site recipe for the tests: pfbuild's postfix recipe, built without Berkeley DB."""

from __future__ import annotations

import dataclasses

from builder.model.loader import load_recipe

RECIPE = dataclasses.replace(load_recipe("postfix"), name="postfix-nobdb", berkeley_db=False)
