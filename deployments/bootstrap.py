"""Turn prefect.yaml into running deployments on the Prefect server at PREFECT_API_URL.

    ./dev python -m deployments.bootstrap

The settings file's Prefect and MLflow variables (the API URL, its auth string, MLflow's
credentials) are exported before Prefect is imported, since Prefect reads its own variables
once, at import; the work itself is in `deployments.server_objects`.
"""

from __future__ import annotations

import sys


def main() -> None:
    from retrain.config.settings import export_tool_variables
    from retrain.errors import BadInput

    try:
        export_tool_variables()
    except BadInput as err:
        sys.exit(f"bootstrap: {err}")
    from deployments.server_objects import main as set_up_server

    set_up_server()


if __name__ == "__main__":
    main()
