"""The gridless master: FastAPI app, services over the database, worker manager, CLI."""
