"""fastenv: vectorized, high-throughput OpenSim environments for gait imitation."""
__version__ = "0.1.0"
