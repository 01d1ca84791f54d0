"""Model: recipes, target distributions and the version scheme, validated on load."""
