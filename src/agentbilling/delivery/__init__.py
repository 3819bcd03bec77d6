"""What leaves the service: notice emails, webhooks out, and the claiming of due rows."""
