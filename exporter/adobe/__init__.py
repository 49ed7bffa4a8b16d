"""Adobe API integration: settings, one hardened HTTP client, and the IMS token provider."""
