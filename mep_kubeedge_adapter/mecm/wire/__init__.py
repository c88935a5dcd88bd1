"""The ``internal.lcmservice.AppLCM`` wire contract: our proto and the stubs generated from it.

Never edit the ``lcmservice_pb2*`` files by hand: change ``lcmservice.proto`` and run
``make proto`` (a test regenerates them and fails on any difference).
"""
