"""The datasets page: every dataset with its row count, its rows in the list, its downloads.

Adding and removing rows happens on the requests list (a selection or the whole filter) through
the API's /v1/helicone-dataset routes; downloads are GET /v1/export, streamed with no row cap.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from proxy.dashboard.render import render
from proxy.state import STORE
from storage.query.datasets import list_datasets
from storage.query.export import FORMATS


async def page(request: web.Request) -> web.StreamResponse:
    """The datasets, newest last, each with its links."""
    found = await list_datasets(request.app[STORE])
    datasets = [
        {
            **dataset,
            "rows_url": "/requests?" + urlencode({"dataset": dataset["name"]}),
            "downloads": [
                (fmt, "/v1/export?" + urlencode({"dataset": dataset["name"], "format": fmt}))
                for fmt in FORMATS
            ],
        }
        for dataset in found
    ]
    return render(request, "datasets.html", {"datasets": datasets})
