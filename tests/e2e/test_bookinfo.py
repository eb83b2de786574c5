"""Reading productpage: which reviews version answered, and logging in as jason."""

from __future__ import annotations

import pytest
import requests

from ci.e2e.bookinfo import Client, classify
from ci.errors import UserError
from ci.mesh.bookinfo import stars
from tests.helpers.e2e import ProductpageStandIn, productpage_html, productpage_server


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_each_reviews_version_is_told_from_its_markup(version):
    assert classify(productpage_html(version)) == version


def test_reviews_unreachable_is_an_error_not_v1():
    assert classify(productpage_html("error")) == "error"


def test_ratings_unavailable_is_unknown_not_v1():
    # v2/v3 show a notice instead of stars when ratings is down: no stars, yet not v1.
    assert classify(productpage_html("ratings-down")) == "unknown"


def test_a_page_that_is_not_productpage_is_unknown():
    assert classify("<html><title>404 Not Found</title></html>") == "unknown"


def test_stars_in_both_colors_are_unknown():
    page = productpage_html("v2").replace("</blockquote>", stars("red", 3) + "</blockquote>", 1)
    assert classify(page) == "unknown"


def test_stars_in_an_unexpected_color_are_unknown():
    assert classify(productpage_html("v2").replace('color="black"', 'color="green"')) == "unknown"


def test_font_color_is_read_case_and_space_insensitively():
    page = productpage_html("v3").replace('color="red"', 'color=" RED "')
    assert classify(page) == "v3"


@pytest.fixture
def test_v2_productpage():
    app = ProductpageStandIn(mode="test-v2")
    with productpage_server(app) as url:
        yield app, url


def test_login_sets_the_session_cookie_and_jason_then_sees_v2(test_v2_productpage):
    app, url = test_v2_productpage
    client = Client(url)
    jason = client.session("jason")
    assert "session" in jason.cookies
    assert client.count(jason, 5) == {"v2": 5}
    assert client.count(client.session(), 5) == {"v1": 5}
    assert app.end_users.count("jason") == 5 and app.end_users.count(None) == 5


def test_login_and_logout_redirect_to_the_referer_as_productpage_does(test_v2_productpage):
    _, url = test_v2_productpage
    http = requests.Session()
    login = http.post(
        f"{url}/login",
        data={"username": "jason", "passwd": "x"},
        headers={"Referer": f"{url}/productpage"},
        allow_redirects=False,
    )
    assert (login.status_code, login.headers["Location"]) == (302, f"{url}/productpage")
    assert login.headers["Set-Cookie"].endswith("; HttpOnly; Path=/")
    assert "jason" in http.get(f"{url}/productpage").text
    logout = http.get(
        f"{url}/logout", headers={"Referer": f"{url}/productpage"}, allow_redirects=False
    )
    assert (logout.status_code, logout.headers["Location"]) == (302, f"{url}/productpage")
    assert logout.headers["Set-Cookie"].startswith("session=; Expires=Thu, 01-Jan-1970")
    assert "session" not in http.cookies


def test_login_without_a_referer_still_logs_in_and_redirects_to_none(test_v2_productpage):
    # The real productpage (Werkzeug 0.15) does this; the client sends a Referer to avoid it.
    _, url = test_v2_productpage
    response = requests.post(
        f"{url}/login", data={"username": "jason", "passwd": "x"}, allow_redirects=False
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/None")
    assert "session" in response.cookies


def test_the_session_cookie_is_flasks_as_the_real_productpage_set_it():
    # Set by the real productpage (Istio 1.10.6 fd053c6165d2, Flask 1.0.2) on 2026-12-01 at
    # this timestamp for jason: the stand-in signs the same bytes, and reads them back.
    real = "eyJ1c2VyIjoiamFzb24ifQ.aw8zTw.36HhAyQYw1ceFT86Bl4DDEzNdtY"
    app = ProductpageStandIn()
    assert app.sign("jason", timestamp=1796158287) == real
    assert app.user_from(f"session={real}") == "jason"
    assert app.user_from(f"session={real[:-1]}A") is None


def test_a_forged_session_cookie_is_anonymous(test_v2_productpage):
    _, url = test_v2_productpage
    client = Client(url)
    forged = requests.Session()
    forged.cookies.set("session", "eyJ1c2VyIjoiamFzb24ifQ.aw8zTw.AAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert client.sample(forged).version == "v1"


def test_login_that_sets_no_cookie_is_a_user_error(test_v2_productpage):
    _, url = test_v2_productpage
    with pytest.raises(UserError, match="logging in to Bookinfo as 'jason' failed: POST /login"):
        Client(url + "/nowhere").session("jason")


def test_unreachable_productpage_counts_as_error():
    from tests.helpers.net import free_port

    client = Client(f"http://127.0.0.1:{free_port()}", timeout=1)
    sample = client.sample(client.session())
    assert (sample.status, sample.version) == (0, "error")


def test_unreachable_login_is_a_one_line_user_error():
    from tests.helpers.net import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError) as failure:
        Client(url, timeout=1).session("jason")
    assert str(failure.value) == (
        f"logging in to Bookinfo as 'jason' failed: POST {url}/login raised ConnectionError; "
        "check that the ingress gateway answers"
    )


class _Flaky(ProductpageStandIn):
    """Answers 502 (as a gateway whose upstream failed) for the first `failures` requests."""

    def __init__(self, failures: int) -> None:
        super().__init__(mode="all-v1")
        self.failures = failures


def _flaky_server(failures: int):
    from http.server import BaseHTTPRequestHandler

    from ci.mesh.bookinfo import productpage_handler
    from tests.helpers.net import serving

    app = _Flaky(failures)
    real = productpage_handler(app)

    class Handler(real):
        def do_GET(self):
            if app.failures > 0:
                app.failures -= 1
                BaseHTTPRequestHandler.send_error(self, 502)
                return
            super().do_GET()

    return serving(Handler)


def test_a_gateway_error_is_asked_again_once_and_counted():
    with _flaky_server(failures=1) as url:
        client = Client(url)
        assert client.sample(client.session()).version == "v1"
        assert client.retried == [502] and client.requests == 2


def test_a_gateway_error_twice_in_a_row_is_an_error():
    with _flaky_server(failures=2) as url:
        client = Client(url)
        sample = client.sample(client.session())
        assert (sample.status, sample.version) == (502, "error")
        assert client.retried == [502] and client.requests == 2
