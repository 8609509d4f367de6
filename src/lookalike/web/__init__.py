"""The web page served at /ui."""
