"""A clock the test moves, for the agent socket's admissions (tests/agents/test_*_admission.py)."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
