"""The HTTP API's routes, one Powertools ``Router`` per concern (``speech``, ``verify``,
``health``), included by ``voxproof.handlers.rest``; ``base`` is what they share."""
