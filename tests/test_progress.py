"""Progress texts: done/total, percent and the time left from the events' own rate."""

from napari_scr2st.progress import Progress, ProgressClock, eta_seconds, format_seconds


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_eta_is_elapsed_over_done_times_what_is_left():
    assert eta_seconds(10.0, 2, 10) == 40.0
    assert eta_seconds(10.0, 0, 10) is None and eta_seconds(10.0, 3, 0) is None
    assert eta_seconds(5.0, 10, 10) == 0.0


def test_format_seconds():
    assert [format_seconds(x) for x in (0.4, 42, 60, 185, 3720)] == ["0 s", "42 s", "1 min", "3 min 5 s", "1 h 02 min"]


def test_clock_texts_follow_phases():
    c = FakeClock()
    clock = ProgressClock(clock=c)
    assert clock.text(Progress(0, 100, "embedding spots")) == "embedding spots · 0/100 (0%) · estimating time left"
    c.t += 20
    assert clock.text(Progress(25, 100, "embedding spots")) == "embedding spots · 25/100 (25%) · about 1 min left"
    c.t += 60
    assert clock.text(Progress(100, 100, "embedding spots")) == "embedding spots · 100/100 (100%)"
    # a new phase (other total): the rate restarts from its first event
    c.t += 1
    assert clock.text(Progress(0, 10, "epoch 1/2")).endswith("0/10 (0%) · estimating time left")
    c.t += 2
    assert clock.text(Progress(1, 10, "epoch 1/2")) == "epoch 1/2 · 1/10 (10%) · about 18 s left"
    # no total: elapsed time instead of a made-up percentage
    c.t += 3
    assert clock.text(Progress(0, 0, "fitting the reference")) == "fitting the reference · 1 min 26 s elapsed"
