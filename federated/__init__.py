"""Federated training across data holders on Flower's deployment engine (see README,
"Federated training"): ``task`` (Flower-free holder logic), ``worker`` (the holder's warm
training service), ``client_app`` / ``server_app`` (Flower Message API)."""
