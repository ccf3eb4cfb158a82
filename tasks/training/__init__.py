"""Training of the release models: the fitting (``fit``), a federation's models reused
(``federation``) and the Prefect tasks (``steps``)."""
