"""Lambda adapters: parse the event, call the service, shape the response."""
