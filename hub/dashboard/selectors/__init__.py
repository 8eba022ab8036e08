"""Reads behind the dashboards, one module per page (``online``, ``member``, ``queues``, ``deliveries`` and its
``timeline``), and the database gauges of ``/metrics`` (``gauges``). The Feishu page reads ``feishu.selectors``
and the collisions page ``feishu.coordination.selectors``.

Everything is computed from database rows when read, so any daphne process answers the same.
"""
