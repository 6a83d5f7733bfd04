// Authenticated calls through the generated Kotlin client (kotlin, okhttp + gson) against the
// live service: tests/e2e/test_sdk_e2e.py compiles it with the client and runs it on the JVM.
import app.trellis.client.apis.MeApi
import app.trellis.client.infrastructure.ClientException
import app.trellis.client.models.Me

fun check(condition: Boolean, what: String) {
    if (!condition) throw IllegalStateException("kotlin client: $what")
}

fun main(args: Array<String>) {
    val (baseUrl, token) = args
    val me = MeApi(baseUrl).apply { accessTokenProvider = { token } }.getMe()
    check(Me.Roles.consumer in me.roles, "roles ${me.roles}")
    check(me.createdAt.year >= 2024, "a typed timestamp ${me.createdAt}")

    // A wrong token: the 401 is an exception with the status, not a crash in parsing.
    val refused =
        try {
            MeApi(baseUrl).apply { accessTokenProvider = { "not-a-token" } }.getMe()
            null
        } catch (e: ClientException) {
            e.statusCode
        }
    check(refused == 401, "a bad token answered $refused")
    println("""{"id": "${me.id}", "roles": "${me.roles}", "refused": $refused}""")
}
