"""Recipes: one module per package pfbuild builds, each defining RECIPE (builder.model.recipe)."""
