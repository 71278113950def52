"""OpenSim adapter: models in, flat NumPy arrays out, controls in, State snapshots."""
from fastenv.sim.simulation import (  # noqa: F401
    GRAVITY,
    INTEGRATORS,
    Layout,
    Simulation,
    SimulationError,
    Snapshot,
    contact_foot,
    foot_record_indices,
    shared_simulation,
)
