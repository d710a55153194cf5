"""``mzsr-app`` in a real browser: headless Chromium drives the page as a person would.

The app runs as its own process (``python -m mzsr_plugin.app``) on a free local port; Selenium uploads an image,
runs one adaptation step and reads the result and its numbers from the page, then uploads a corrupt file and reads
the command line's message. Skips, with the reason, where Gradio, Selenium or Chromium is not installed
(``pip install -e ".[app,dev]"`` and Debian's ``chromium chromium-driver``; ``.ci/run`` installs them).
"""
import cv2
import numpy as np
import os
import pytest
import shutil
import skimage.data
import socket
import subprocess
import sys
import time
import urllib.request
from os import path as osp

gradio = pytest.importorskip('gradio', reason='the web app needs Gradio: pip install -e ".[app]"')
webdriver = pytest.importorskip('selenium.webdriver', reason='browser tests need Selenium: pip install selenium')
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from mzsr_plugin.data.kernels import parse_kernel_spec  # noqa: E402
from mzsr_plugin.evaluation import degraded_case  # noqa: E402
from mzsr_plugin.utils.image_io import SUPPORTED_FORMATS  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
DRIVER = shutil.which('chromedriver')
SCREENSHOT = os.environ.get('MZSR_APP_SCREENSHOT')  # set to a path to keep the page's picture (README's)

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason='no Chromium/chromedriver on PATH (apt-get install chromium chromium-driver)')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp('app')
    port = free_port()
    log = open(work / 'app.log', 'w')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, '-m', 'mzsr_plugin.app', '--port', str(port), '--work-dir',
                             str(work / 'results'), '--max-pixels', '20000'], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f'mzsr-app did not answer on {url} within 120 s: {(work / "app.log").read_text()[-2000:]}')
    if proc.poll() is not None:
        pytest.fail(f'mzsr-app exited: {(work / "app.log").read_text()[-2000:]}')
    yield url, work
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope='module')
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1400,1800',
                 '--disable-gpu'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser, url):
    browser.get(url)
    WebDriverWait(browser, 60).until(expected_conditions.element_to_be_clickable((By.ID, 'run_photo')))


def upload(browser, elem_id, path):
    field = browser.find_element(By.CSS_SELECTOR, f'#{elem_id} input[type=file]')
    field.send_keys(str(path))


def set_slider(browser, elem_id, value):
    box = browser.find_element(By.CSS_SELECTOR, f'#{elem_id} input[type=number]')
    box.clear()
    box.send_keys(str(value))
    box.send_keys('\t')


def test_photo_is_super_resolved_in_the_page(server, browser, tmp_path):
    url, work = server
    # A crop of a real photo, degraded as the official inputs (kernel g^d_2.0, direct x2).
    hr = skimage.data.chelsea()[60:140, 140:236]
    case = degraded_case('photo', hr, parse_kernel_spec('g_d_2.0').kernel, 2)
    lr = (case.lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'photo.png'), lr[..., ::-1])
    open_page(browser, url)
    upload(browser, 'lr_image', tmp_path / 'photo.png')
    time.sleep(2)  # the upload finishes before the click is taken
    set_slider(browser, 'steps', 1)
    kernel = browser.find_element(By.CSS_SELECTOR, '#kernel_spec textarea')
    assert kernel.get_attribute('value') == 'estimate'  # a photo's kernel is unknown: blind by default
    kernel.clear()
    kernel.send_keys('g_d_2.0')
    browser.find_element(By.ID, 'run_photo').click()
    info = WebDriverWait(browser, 240).until(
        lambda d: d.find_element(By.ID, 'photo_info').text if 'adaptation step' in d.find_element(
            By.ID, 'photo_info').text else False)
    assert 'MZSR, 1 adaptation step(s) on photo.png: LR 48x40 → SR 96x80, kernel g_d_2.0 (direct x2)' in info
    seconds = float(info.split('; ')[1].split(' s for SR')[0])
    assert 0 < seconds < 240
    # The before/after slider holds bicubic and SR; the SR, kernel and comparison are served files.
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#slider img')) >= 2)
    sources = [img.get_attribute('src') for img in browser.find_elements(By.CSS_SELECTOR, '#slider img')]
    assert any('photo_bicubic' in s for s in sources) and any(s.endswith('photo.png') for s in sources)
    assert browser.find_elements(By.CSS_SELECTOR, '#kernel_png img')
    assert browser.find_elements(By.CSS_SELECTOR, '#compare img')
    outputs = [p for p in (work / 'results').rglob('photo.png')]
    assert outputs and cv2.imread(str(outputs[0])).shape == (80, 96, 3)
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)


def test_corrupt_upload_shows_the_command_line_message_and_the_server_keeps_serving(server, browser, tmp_path):
    url, _ = server
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really an image')
    open_page(browser, url)
    upload(browser, 'lr_image', tmp_path / 'broken.png')
    time.sleep(2)
    browser.find_element(By.ID, 'run_photo').click()
    WebDriverWait(browser, 60).until(lambda d: 'cannot be decoded' in d.page_source)
    assert f'broken.png cannot be decoded (corrupt, or not a {SUPPORTED_FORMATS} image)' in browser.page_source
    assert 'Traceback' not in browser.page_source
    open_page(browser, url)  # still serving
    assert urllib.request.urlopen(url, timeout=10).status == 200
