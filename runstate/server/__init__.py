"""runstate.server: the Responses API and the Assistants runs API as an ASGI app, with a
service's handler run as durable jobs (the ``server`` extra: FastAPI, uvicorn).

    from runstate import Completed
    from runstate.server import create_app

    async def generate(job):
        for word in ("Hello", " world"):
            await job.emit("response.output_text.delta", {"delta": word})
        return Completed(usage={"input_tokens": 1, "output_tokens": 2})

    app = create_app("sqlite:///runs.db", handler=generate)   # uvicorn module:app

``create_app`` makes the app; ``router`` the same routes for an app of the service's
own (``app.include_router(router(...), prefix="/llm")``); ``bearer(key)`` an auth hook
checking an API key; ``demo`` the scripted demo model that ``runstate serve`` serves
without ``--handler``.
"""

from ._app import Service, create_app, router
from ._demo import DemoModel, demo
from ._http import KEEPALIVE, bearer

__all__ = ["KEEPALIVE", "DemoModel", "Service", "bearer", "create_app", "demo", "router"]
