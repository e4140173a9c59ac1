"""``watch --detector auto`` means the home's detector, whatever folder the daemon starts in."""

from __future__ import annotations

import shutil

import pytest

from .conftest import REAL_DEFAULT_DETECTOR


class Loaded(Exception):
    pass


@pytest.mark.parametrize("how", ["flag", "env"])
def test_auto_detector_is_resolved_against_the_home(tmp_path, monkeypatch, tiny_model, ink_detector, how):
    from batchclf import paths
    from batchclf.model import predictor as predictor_module
    from batchclf.watch.daemon import Daemon
    from batchclf.watch.settings import resolve

    monkeypatch.setattr(paths, "default_detector", REAL_DEFAULT_DETECTOR)
    home = tmp_path / "home"
    (home / "inbox").mkdir(parents=True)
    detector = home / "models" / paths.DETECTOR_NAME
    detector.parent.mkdir(parents=True)
    shutil.copy(ink_detector, detector)
    shutil.copy(ink_detector.with_suffix(".json"), detector.with_suffix(".json"))
    elsewhere = tmp_path / "elsewhere"  # the daemon's working folder: its own models/ must not count
    (elsewhere / "models" / "detectors").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("BATCHCLF_HOME", raising=False)
    if how == "env":
        monkeypatch.setenv("BATCHCLF_DETECTOR", "auto")
        flags = {"model": tiny_model, "oneshot": True}
    else:
        flags = {"model": tiny_model, "oneshot": True, "detector": "auto"}
    seen = {}

    def capture(model, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(predictor_module, "Predictor", capture)
    options = resolve(flags, home=home).options()
    with pytest.raises(Loaded):
        Daemon(options).run()
    assert seen["detector"] == detector
