"""Generated code; do not edit. Regenerate with clients/python/generate.sh."""
