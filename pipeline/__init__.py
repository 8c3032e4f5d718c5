"""Heron pipeline core: types, scorers, ensemble, policy, service, queue. No HTTP here."""
