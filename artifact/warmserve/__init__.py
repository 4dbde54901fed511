"""WarmServe reproduction: workload, control policies, cluster twin and real-engine testbed."""
__version__ = "0.1.0"
