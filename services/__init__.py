"""BentoML services: load the champion from the registry, serve it over HTTP."""
