"""Create the MLflow users of a tracking server that runs MLflow's basic-auth app.

    MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_AUTH_ADMIN_PASSWORD=... \\
    MLFLOW_RETRAIN_PASSWORD=... MLFLOW_READER_PASSWORD=... ./dev python -m deployments.mlflow_users

As the admin (MLFLOW_AUTH_ADMIN_USERNAME, default `admin`), it makes sure that:
- `retrain` exists with MLFLOW_RETRAIN_PASSWORD and is no admin. With the server's
  `default_permission = READ`, it can edit only what it creates: its experiments, runs and
  registered models, whose aliases (`champion`) it alone moves.
- `reader` exists with MLFLOW_READER_PASSWORD (when set): it browses everything and edits
  nothing.
Idempotent: a user that exists gets the configured password again (so rotating one is a
matter of changing the variable and running this again).
"""

from __future__ import annotations

import os
import sys

USERS = {"retrain": "MLFLOW_RETRAIN_PASSWORD", "reader": "MLFLOW_READER_PASSWORD"}
MIN_PASSWORD = 12  # MLflow's own rule for basic-auth passwords


def wanted_users() -> dict[str, str]:
    """The users to create and their passwords, from the environment; SystemExit with the
    variable to set when one is missing or too short."""
    users = {}
    for user, variable in USERS.items():
        password = os.environ.get(variable, "")
        if not password and user == "reader":
            continue
        if len(password) < MIN_PASSWORD:
            sys.exit(f"mlflow_users: set {variable} ({MIN_PASSWORD}+ characters)")
        users[user] = password
    return users


def ensure_users(tracking_uri: str, users: dict[str, str]) -> list[str]:
    """Create or update each user as the admin; returns what was done, one line per user."""
    import mlflow.server
    from mlflow.exceptions import RestException

    client = mlflow.server.get_app_client("basic-auth", tracking_uri=tracking_uri)
    done = []
    for user, password in users.items():
        try:
            client.create_user(user, password)
            done.append(f"user {user} created")
        except RestException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.update_user_password(user, password)
            done.append(f"user {user} exists; password set")
    return done


def main() -> None:
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    admin_password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not tracking_uri.startswith(("http://", "https://")) or not admin_password:
        sys.exit("mlflow_users: set MLFLOW_TRACKING_URI to the tracking server and "
                 "MLFLOW_AUTH_ADMIN_PASSWORD to its admin password")  # fmt: skip
    users = wanted_users()
    # MLflow's clients authenticate with these two variables: here, as the admin
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = admin_password
    for line in ensure_users(tracking_uri, users):
        print(line)


if __name__ == "__main__":
    main()
