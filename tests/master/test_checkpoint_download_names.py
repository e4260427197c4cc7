"""A downloaded checkpoint is named after its study and trial: every trial's
files share their score-first names, so the bare name collided in a downloads folder."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from gridless.common.checkpoints import trial_folder
from gridless.master.routes.checkpoints import content_disposition, download_name
from gridless.worker.loop import run_worker
from tests.conftest import Master, tiny_spec


@pytest.mark.parametrize(
    ("study", "number", "file", "expected"),
    [
        ("tiny", 0, "val0.9731_ep012.npz", "tiny-trial000000-val0.9731_ep012.npz"),
        (
            "digits-mlp",
            12,
            "loss0002.3026_ep001.pt",
            "digits-mlp-trial000012-loss0002.3026_ep001.pt",
        ),
        ("s", 999_999, "a.npz", "s-trial999999-a.npz"),
        ("s", 1_234_567, "a.npz", "s-trial1234567-a.npz"),  # past 6 digits: wider, not cut
    ],
)
def test_download_name(study: str, number: int, file: str, expected: str) -> None:
    assert download_name(study, number, file) == expected


@pytest.mark.parametrize(
    ("name", "header"),
    [
        (
            "tiny-trial000003-val0.5000_ep001.npz",
            'attachment; filename="tiny-trial000003-val0.5000_ep001.npz"',
        ),
        (
            "étude-trial000001-a.npz",
            "attachment; filename=\"_tude-trial000001-a.npz\"; filename*=UTF-8''%C3%A9tude-trial000001-a.npz",
        ),
        (
            'a "b";c\\d.npz',
            "attachment; filename=\"a__b__c_d.npz\"; filename*=UTF-8''a%20%22b%22%3Bc%5Cd.npz",
        ),
        (".hidden.npz", "attachment; filename=\"_hidden.npz\"; filename*=UTF-8''.hidden.npz"),
        (
            "a\r\nSet-Cookie: x.npz",
            "attachment; filename=\"a__Set-Cookie__x.npz\"; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x.npz",
        ),
    ],
)
def test_content_disposition_uses_safe_characters_and_rfc6266_filename_star(
    name: str, header: str
) -> None:
    assert content_disposition(name) == header


def test_download_header_carries_study_and_trial(master: Master) -> None:
    master.service.create_study(tiny_spec(early_stopping={"rule": "none"}))
    run_worker(master.url, master.store_root, "t1")
    api = f"{master.url}/api/v1"
    listing = httpx.get(f"{api}/studies/1/checkpoints?limit=1000").json()["data"]
    assert len({c["trial_number"] for c in listing}) > 1
    names = set()
    for ck in listing:
        response = httpx.get(f"{api}/checkpoints/file", params={"path": ck["path"]})
        assert response.status_code == 200
        name = f"tiny-trial{trial_folder(ck['trial_number'])}-{ck['name']}"
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert hashlib.sha256(response.content).hexdigest() == ck["sha256"]
        names.add(name)
    assert len(names) == len(listing)  # no two downloads of a study share a name
