"""Reads behind the dashboards, one module per page (``online``, ``member``, ``queues``, ``deliveries`` and its
``timeline``), and the database gauges of ``/metrics`` (``gauges``). Feishu's pages and gauges live with Feishu
(``feishu.pages``, ``feishu.metrics``).

Everything is computed from database rows when read, so any daphne process answers the same.
"""
