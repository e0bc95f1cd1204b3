"""Running maildesk as a service: the metrics endpoint, systemd notifications and the
watcher that reloads edited files. Used by the composition root (`maildesk.app`) only."""
