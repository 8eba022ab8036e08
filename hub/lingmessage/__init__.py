"""The family's shared mailbox directory, in the on-disk formats its members read and write.

Two formats live side by side under one root (``HUB_LINGMESSAGE_DIR``; deployed as ``/home/ai/.lingmessage``):

- ``store``: LingMessage's ``threads/<thread_id>/thread.json`` + ``msg_<message_id>.json`` and ``index.json``,
  read by LingMessage's CLI, poller and LingBus import;
- ``discussions``: LingYi's ``discussions/<discussion_id>.json``, where LingYi's web app and lingzhi look up the
  ``discussion_id`` of a notify (and where both post).

Writing a discussion message under one 32-hex id in both (LingMessage's first, then LingYi's, which keeps the
shared index entry "open" for LingYi), and notifying that id as ``discussion_id`` and ``thread_id``, lets every
member open what it was told about. ``files`` holds the locking and atomic writes both
share with LingMessage. Only the standard library is imported here.
"""
