"""exp-app: the same frames as exp-animate, the reference fit cached per image, the commands' one-line errors; and the
page itself, driven in a real headless browser (Debian's chromium + chromedriver through selenium)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from expgen.animator import AnimateConfig, Animator
from expgen.app import AppJob, AppRunner, StageClock, fit_key, page_error
from expgen.app.runner import example_files
from expgen.cli.animate import main as animate_main
from exphead.media import read_frames, write_image, write_video

ARGS = ["--size", "128", "--fit_size", "128", "--fit_steps", "2", "--tracker.steps", "5", "--max_frames", "6"]
CONFIG = AnimateConfig(size=128, fit_size=128, fit_steps=2, tracker=replace(AnimateConfig().tracker, steps=5),
                       max_frames=6)  # as the command's --tracker.steps 5: exp-animate's tracker with 5 steps
APT = "apt-get install -y chromium chromium-driver"
SCREENSHOT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "app_screenshot.png"


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return example_files(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def runner(head_model):
    return AppRunner(CONFIG, model=head_model)


@pytest.fixture(scope="module")
def first_run(runner, examples, tmp_path_factory):
    """The astronaut animated by carphone through the app (a fresh fit), and the progress bar's texts."""
    texts = []
    result = runner.run(AppJob(*map(str, examples), size=128, max_frames=6), tmp_path_factory.mktemp("app"),
                        lambda fraction, text: texts.append(text))
    return result, texts


def test_app_gives_the_command_s_frames(first_run, tmp_path):
    """Same settings, same frames: exp-animate on its embedded defaults and the app on its examples."""
    first_run, texts = first_run
    assert [t.split(":")[0] for t in texts] == ["fit", "track", "generate", "write", "write"]
    assert texts[-1] == "write: joining the video of 6 (about 0 s left)" and "s left" in texts[2]
    assert animate_main([*ARGS, "--out", str(tmp_path / "cli.mp4")]) == 0
    assert not first_run.cached_fit and first_run.frames == 6
    for ours, theirs in ((first_run.video, "cli.mp4"), (first_run.preview_video, "cli_preview.mp4")):
        app_frames, cli_frames = read_frames(ours)[0], read_frames(tmp_path / theirs)[0]
        assert app_frames.shape[0] == 6 and np.array_equal(app_frames, cli_frames)
    assert first_run.video.read_bytes() == (tmp_path / "cli.mp4").read_bytes()


def test_fit_is_cached_per_image(runner, examples, first_run, tmp_path, monkeypatch):
    """A second run, and a second driving video, reuse the fit (and the same run gives the same frames)."""
    def no_fit(*args, **kwargs):
        raise AssertionError("the reference was fitted again")

    first_run = first_run[0]
    monkeypatch.setattr(Animator, "fit_reference", no_fit)
    again = runner.run(AppJob(*map(str, examples), size=128, max_frames=6), tmp_path / "again")
    assert again.cached_fit and "fit reused" in again.summary()
    assert np.array_equal(read_frames(again.video)[0], read_frames(first_run.video)[0])
    other = tmp_path / "other.mp4"
    write_video(other, read_frames(examples[1])[0][40:46], fps=25.0)
    assert runner.run(AppJob(str(examples[0]), str(other), size=128, crop_only=True), tmp_path / "other").cached_fit
    assert read_frames(tmp_path / "other" / "result.mp4")[0].shape == (6, 128, 128, 3)

    key = fit_key(CONFIG, str(examples[0]), str(examples[1]))
    assert fit_key(AnimateConfig(**{**CONFIG.__dict__, "size": 256, "expression_scale": 0.5}), str(examples[0]),
                   str(other)) == key  # not what the fit depends on
    assert fit_key(AnimateConfig(**{**CONFIG.__dict__, "fit_steps": 3}), str(examples[0]), str(other)) != key
    copy = shutil.copyfile(examples[0], tmp_path / "renamed.png")
    assert fit_key(CONFIG, str(copy), "") == key  # the image's bytes, not its name
    write_image(tmp_path / "flipped.png", np.ascontiguousarray(read_frames(examples[0])[0][0, :, ::-1]))
    assert fit_key(CONFIG, str(tmp_path / "flipped.png"), "") != key


def test_self_mode_fit_is_cached_per_driving_video(runner, examples, tmp_path):
    """Self mode: the reference is a driving frame, so the driving video's bytes (and its crop box) are the key."""
    job = AppJob(None, str(examples[1]), mode="self", size=128, max_frames=6, crop_only=True)
    first, again = runner.run(job, tmp_path / "first"), runner.run(job, tmp_path / "again")
    assert not first.cached_fit and again.cached_fit
    assert np.array_equal(read_frames(first.video)[0], read_frames(again.video)[0])


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, examples):
    root = tmp_path_factory.mktemp("bad")
    write_image(root / "grey.png", np.full((96, 96, 3), 128, np.uint8))
    (root / "corrupt.mp4").write_bytes(b"\x00\x01 not a video")
    return root


@pytest.mark.parametrize("name, reference, driving, message", [
    ("no face", "{root}/grey.png", "{carphone}", "reference grey.png: no face found"),
    ("unreadable video", "{astronaut}", "{root}/corrupt.mp4", "corrupt.mp4: unreadable video"),
])
def test_page_errors_are_the_command_s(runner, examples, bad_inputs, capsys, tmp_path, name, reference, driving,
                                       message):
    """The page shows the line exp-animate prints for the same input (uploads named by their file name)."""
    names = {"root": bad_inputs, "astronaut": examples[0], "carphone": examples[1]}
    reference, driving = reference.format(**names), driving.format(**names)
    with pytest.raises(ValueError) as err:
        runner.run(AppJob(reference, driving, size=128, max_frames=6), tmp_path)
    shown = page_error(err.value, [reference, driving])
    assert shown.startswith("error: ") and message in shown
    assert animate_main(["-r", reference, "-d", driving, *ARGS, "--out", str(tmp_path / "o.mp4")]) == 2
    printed = capsys.readouterr().err.strip().splitlines()[-1]
    for path in (reference, driving):
        printed = printed.replace(str(Path(path).parent) + "/", "")
    addresses = lambda line: re.sub(r"0x[0-9a-f]+", "0x", line)  # noqa: E731 - ffmpeg's messages name its objects
    assert addresses(printed) == addresses("exp-animate: " + shown)


def test_page_refuses_missing_and_too_long_inputs(examples, head_model, tmp_path):
    runner = AppRunner(CONFIG, frame_limit=20, model=head_model)
    for job, message in [(AppJob(None, str(examples[1])), "no portrait"),
                         (AppJob(str(examples[0]), None), "no driving video"),
                         (AppJob(str(examples[0]), str(examples[1]), max_frames=0), "120 frames, more than")]:
        with pytest.raises(ValueError, match=message):
            runner.run(job, tmp_path)
    assert not list(tmp_path.iterdir())


def test_stage_clock_names_the_stage_and_the_seconds_left():
    clock = StageClock(chunk=4, history={"fit": 3.0, "track": 0.1, "generate": 0.1, "write": 0.1})
    fraction, text = clock("fit", 0, 0)
    assert fraction == 0 and re.fullmatch(r"fit: .* \(about [23] s left\)", text)
    assert clock("track", 0, 8)[1] == "track: frames 1-4 of 8 (about 2 s left)"  # 0.3 s per frame, from history
    time.sleep(0.05)
    fraction, text = clock("write", 4, 8)
    assert 0.5 < fraction < 1 and text.startswith("write: frames 5-8 of 8 (about 0 s left)")
    assert StageClock(chunk=4)("fit", 0, 0)[1].endswith("(estimating time left)")
    assert StageClock(chunk=4, cached=True)("fit", 0, 0)[1] == "fit: reusing the portrait's head (about 0 s left)"


def _require_browser() -> None:
    """Skip, naming what to install, without gradio, selenium, or Debian's chromium and chromedriver."""
    pytest.importorskip("gradio", reason='exp-app needs gradio: pip install -e ".[app]"')
    pytest.importorskip("selenium", reason='the browser test needs selenium: pip install -e ".[app]"')
    missing = [p for p in ("chromium", "chromedriver") if shutil.which(p) is None]
    if missing:
        pytest.skip(f"no {' or '.join(missing)} on PATH: install Debian's packages ({APT})")


def _chrome():
    """Headless chromium driven by the system's chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(tmp_path):
    """exp-app in a subprocess on a free local port, its temporary files under ``tmp_path / "tmp"``."""
    _require_browser()
    port, tmp, log = _free_port(), tmp_path / "tmp", tmp_path / "app.log"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_WAIT_POLICY": "PASSIVE"}
    args = [sys.executable, "-m", "expgen.cli.app", "--port", str(port), *ARGS[:-1], "8"]
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            assert proc.poll() is None, f"exp-app stopped: {log.read_text()[-2000:]}"
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail(f"exp-app did not answer at {url}: {log.read_text()[-2000:]}")
        yield url, tmp, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def _text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').innerText").strip()


def _run(driver, timeout: float = 60) -> tuple[str, set[str]]:
    """Click Animate; the status line once it changes, and the progress stages seen meanwhile."""
    from selenium.webdriver.common.by import By

    before, stages, end = _text(driver, "status"), set(), time.time() + timeout
    driver.find_element(By.ID, "animate").click()
    while time.time() < end:
        stages.update(re.findall(r"\b(fit|track|generate|write): ", driver.execute_script(
            "return document.body.innerText")))
        status = _text(driver, "status")
        if status != before and status.startswith(("done", "error")):
            return status, stages
        time.sleep(0.1)
    pytest.fail(f"no result within {timeout} s; status {_text(driver, 'status')!r}")


def _fetch(driver, css: str, path: Path) -> np.ndarray:
    from selenium.webdriver.common.by import By

    url = driver.find_element(By.CSS_SELECTOR, css).get_attribute("src")
    path.write_bytes(urllib.request.urlopen(url, timeout=10).read())
    return read_frames(path)[0]


def test_page_in_a_browser(app_server, bad_inputs, tmp_path):
    """Examples -> video; a face-less upload -> the error line; the next run works, with the fit reused."""
    driver = _chrome()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, tmp, proc = app_server
    try:
        driver.get(url)
        driver.implicitly_wait(20)
        driver.find_element(By.CSS_SELECTOR, "#reference-examples button").click()
        driver.find_element(By.CSS_SELECTOR, "#driving-examples button").click()
        frames = driver.find_element(By.CSS_SELECTOR, "#frames input[type=number]")
        frames.clear()
        frames.send_keys("6", Keys.TAB)  # the server starts at 8 frames
        driver.find_element(By.CSS_SELECTOR, "#driving video")
        status, stages = _run(driver)
        assert status.startswith("done: 6 frames") and "reference fitted" in status, status
        assert {"fit", "write"} <= stages, stages
        assert _fetch(driver, "#result video", tmp_path / "result.mp4").shape == (6, 512, 512, 3)  # the whole photo
        assert _fetch(driver, "#preview video", tmp_path / "preview.mp4").shape == (6, 128, 4 * 128, 3)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#downloads a")) >= 3
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))

        driver.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(str(bad_inputs / "grey.png"))
        time.sleep(1)
        status, _ = _run(driver)
        assert status == "error: reference grey.png: no face found", status
        assert driver.execute_script("return document.querySelector('#result video')") is None

        driver.find_element(By.CSS_SELECTOR, "#reference-examples button").click()
        time.sleep(1)
        status, _ = _run(driver)
        assert status.startswith("done: 6 frames") and "reference fit reused" in status, status
        assert _fetch(driver, "#result video", tmp_path / "again.mp4").shape == (6, 512, 512, 3)
        assert list(tmp.glob("exp-app-*/session-*"))
    finally:
        driver.quit()
    for _ in range(40):  # the session's folder goes when its tab closes
        if not list(tmp.glob("exp-app-*/session-*")):
            break
        time.sleep(0.25)
    assert not list(tmp.glob("exp-app-*/session-*"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not list(tmp.glob("exp-app-*"))  # and the app's folder when the app stops
