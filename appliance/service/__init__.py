"""Running as a service: systemd notification, logging, run-time status publication."""
