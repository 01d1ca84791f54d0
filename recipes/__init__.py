"""Recipes: one module per package pfbuild builds, each defining RECIPE (see builder.recipe)."""
