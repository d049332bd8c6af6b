from helpers import RunningServer


async def test_welcome_and_auth_on_metrics(server: RunningServer) -> None:
    client = await server.connect("/ws/metrics")
    assert client.welcome is not None
    assert client.welcome["message"] == "Please authenticate within 30 seconds"
    reply = await client.auth()
    assert reply["userId"] == "tester"
