"""Payment providers: the protocol and its facts (provider.py), the sandbox and Stripe."""
