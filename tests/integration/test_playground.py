"""The service's own pages on the session's real ``bentoml serve``: the API page at ``/``, and the playground at ``/ui``
driven in headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with Selenium.

``ZOO_SCREENSHOTS=<folder>`` keeps the playground's screenshots there (README's come from this test).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
TASKS = ("classify", "recommend", "sales", "segment", "sentiment", "superres")


def test_the_api_page_is_course_zoos_and_fetches_nothing_from_the_internet(server: str) -> None:
    page = httpx.get(f"{server}/", timeout=30)
    assert page.status_code == 200 and "<title>course-zoo" in page.text
    assert "googletagmanager" not in page.text and not re.search(r"""(src|href)=["']https?://""", page.text)
    assert 'href="./ui"' in page.text
    for asset in re.findall(r"""(?:src|href)=["'](\./static_content/[^"']+)""", page.text):
        assert httpx.get(f"{server}/{asset[2:]}", timeout=30).status_code == 200, asset

    info = httpx.get(f"{server}/docs.json", timeout=30).json()["info"]
    assert info["title"] == "course-zoo" and info["version"] not in ("None", "", None)
    assert "contact" not in info and "BentoML" not in info["description"] and "](./ui)" in info["description"]
    assert "http" not in info["description"]
    for task in TASKS:
        version = httpx.get(f"{server}/v2/models/{task}", timeout=30).json()["versions"][0]
        assert re.search(rf"\| {task} \| [^|]+ \| {version} \|", info["description"]), task


def test_the_playground_lists_the_served_tasks_with_their_versions(server: str) -> None:
    r = httpx.get(f"{server}/ui", timeout=30)
    assert r.status_code == 307 and r.headers["location"] == "./ui/"
    assert httpx.get(f"{server}/ui/", timeout=30).headers["content-type"].startswith("text/html")
    state = httpx.get(f"{server}/ui/tasks.json", timeout=30).json()
    assert [t["task"] for t in state["tasks"]] == sorted(TASKS)
    classify = next(t for t in state["tasks"] if t["task"] == "classify")
    assert classify["routes"] == ["/classify"] and classify["model_version"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("headless Chromium is not installed: make test installs Debian's chromium and chromium-driver (make system-packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("ZOO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver: object, css: str, timeout: float = 120) -> object:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def open_tab(driver, server: str, task: str) -> None:  # noqa: ANN001 - Selenium's WebDriver
    if not driver.current_url.startswith(f"{server}/ui/"):
        driver.get(f"{server}/ui/")
    wait_for(driver, f"#tab-button-{task}").click()
    wait_for(driver, f"#form-{task}")


def image_loaded(driver, css: str) -> tuple[int, int]:  # noqa: ANN001
    """The natural size of a loaded ``<img>`` (waits until it has decoded)."""
    from selenium.webdriver.support.ui import WebDriverWait

    element = wait_for(driver, css)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element))
    return tuple(driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", element))


def version_shown(driver, task: str) -> str:  # noqa: ANN001
    text = wait_for(driver, f"#result-{task} .version").text
    match = re.fullmatch(r"answered by model version (\S+)", text)
    assert match, text
    return match.group(1)


def test_upload_a_photo_and_see_its_classes_and_heatmap(browser, server: str, mirror: Path, shots: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    open_tab(browser, server, "classify")
    tab = browser.find_element(By.ID, "tab-button-classify").text
    photo = sorted((mirror / "mnist_tiny" / "valid" / "7").glob("*.png"))[0]
    browser.find_element(By.CSS_SELECTOR, "#form-classify input[name=image]").send_keys(str(photo))
    browser.find_element(By.CSS_SELECTOR, "#form-classify button.go").click()
    assert image_loaded(browser, "#classify-heatmap") == (224, 224)  # a 28x28 digit, drawn at 224
    rows = browser.find_elements(By.CSS_SELECTOR, "#classify-predictions tr")[1:]
    assert sorted(r.find_elements(By.TAG_NAME, "td")[0].text for r in rows) == ["3", "7"]
    version = version_shown(browser, "classify")
    assert tab == f"classify (v{version})"
    browser.save_screenshot(str(shots / "playground-classify.png"))

    not_an_image = shots / "not-an-image.png"
    not_an_image.write_bytes(b"this is text, not a PNG")
    browser.find_element(By.CSS_SELECTOR, "#form-classify input[name=image]").send_keys(str(not_an_image))
    browser.find_element(By.CSS_SELECTOR, "#form-classify button.go").click()
    error = wait_for(browser, "#result-classify .error").text
    assert error.startswith("400: ") and "not a decodable image" in error  # the service's own message
    not_an_image.unlink()


def test_type_a_review_and_see_its_sentiment(browser, server: str, shots: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    open_tab(browser, server, "sentiment")
    box = browser.find_element(By.CSS_SELECTOR, "#form-sentiment textarea")
    box.clear()
    box.send_keys("A dull, tedious film. The plot made no sense and I walked out before the end.")
    browser.find_element(By.CSS_SELECTOR, "#form-sentiment button.go").click()
    answer = wait_for(browser, "#sentiment-answer").text
    assert re.fullmatch(r"(positive|negative) with probability \d+\.\d%", answer), answer
    version_shown(browser, "sentiment")
    browser.save_screenshot(str(shots / "playground-sentiment.png"))

    browser.execute_script("arguments[0].value = 'so long. '.repeat(40000)", box)  # 360 kB: over the test server's body cap
    browser.find_element(By.CSS_SELECTOR, "#form-sentiment button.go").click()
    error = wait_for(browser, "#result-sentiment .error").text
    assert error.startswith("413: request body is ") and "the limit is 300000" in error, error


def test_segment_and_superres_show_pictures(browser, server: str, mirror: Path, shots: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    photo = sorted((mirror / "camvid_tiny" / "images").iterdir())[0]
    with Image.open(photo) as img:
        size = img.size
    open_tab(browser, server, "segment")
    browser.find_element(By.CSS_SELECTOR, "#form-segment input[name=image]").send_keys(str(photo))
    browser.find_element(By.CSS_SELECTOR, "#form-segment button.go").click()
    assert image_loaded(browser, "#segment-overlay") == size
    legend = browser.find_elements(By.CSS_SELECTOR, "#segment-legend tr")[1:]
    assert legend and all(r.find_elements(By.CSS_SELECTOR, ".swatch") for r in legend)
    version_shown(browser, "segment")
    browser.save_screenshot(str(shots / "playground-segment.png"))

    small = shots / "small.png"
    with Image.open(photo) as img:
        img.resize((64, 48)).save(small)
    open_tab(browser, server, "superres")
    browser.find_element(By.CSS_SELECTOR, "#form-superres input[name=image]").send_keys(str(small))
    browser.find_element(By.CSS_SELECTOR, "#form-superres button.go").click()
    assert image_loaded(browser, "#superres-after") == (128, 96) and image_loaded(browser, "#superres-before") == (64, 48)
    version_shown(browser, "superres")
    browser.save_screenshot(str(shots / "playground-superres.png"))
    small.unlink()


def test_recommend_and_sales_forms(browser, server: str, shots: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    open_tab(browser, server, "recommend")
    browser.find_element(By.CSS_SELECTOR, "#form-recommend button.go").click()
    assert len(wait_for(browser, "#recommend-movies").find_elements(By.TAG_NAME, "tr")) == 11  # header + k=10
    version_shown(browser, "recommend")
    browser.save_screenshot(str(shots / "playground-recommend.png"))

    open_tab(browser, server, "sales")
    browser.find_element(By.CSS_SELECTOR, "#form-sales button.go").click()
    assert re.fullmatch(r"store 1 on 2015-07-31: \d+ in sales.*", wait_for(browser, "#sales-answer").text)
    version_shown(browser, "sales")
    browser.save_screenshot(str(shots / "playground-sales.png"))
    date = browser.find_element(By.CSS_SELECTOR, "#form-sales input[name=Date]")
    browser.execute_script("arguments[0].value = '1800-01-01'", date)  # outside the calendar the model knows
    browser.find_element(By.CSS_SELECTOR, "#form-sales button.go").click()
    assert re.match(r"4\d\d: .*Date", wait_for(browser, "#result-sales .error").text)
