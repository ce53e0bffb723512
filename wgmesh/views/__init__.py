"""Views: one View protocol, a human (rich) and a JSON implementation."""
