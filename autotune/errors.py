"""Project exceptions: each carries a message a user can act on, printed as one line by the CLI."""


class AutotuneError(Exception):
    """Base class for every error autotune reports to a user."""


class SpecError(AutotuneError):
    """A TOML catalogue entry or study spec is malformed or names something that does not exist."""


class WorkloadError(AutotuneError):
    """A workload could not be loaded or its data is missing."""


class PlanError(AutotuneError):
    """A compression plan names an unknown layer or asks for something impossible."""


class ProxyError(AutotuneError):
    """A proxy metric could not be computed (it raised, or produced a non-finite value)."""


class TargetError(AutotuneError):
    """A hardware target could not build, run or verify a compressed model."""
