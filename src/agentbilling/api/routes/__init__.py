"""The JSON routes, one module per caller: operator, agent runtime, billing, provider webhooks."""
