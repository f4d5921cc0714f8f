#pragma once
// Checks that code under test reports bad input as kto::Error (optionally with a given phrase).
#include <QtTest/QtTest>

#include <string>

#include "core/common/error.h"

// Fails unless `expr` throws kto::Error.
#define EXPECT_KTO_ERROR(expr)                                            \
    do {                                                                  \
        bool kto_thrown_ = false;                                         \
        try {                                                             \
            (void)(expr);                                                 \
        } catch (const kto::Error&) {                                     \
            kto_thrown_ = true;                                           \
        }                                                                 \
        QVERIFY2(kto_thrown_, #expr " did not throw kto::Error");         \
    } while (0)

namespace kto::test {

// Fails unless f() throws kto::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& f, const std::string& needle) {
    try {
        f();
        QFAIL(("no error; expected one mentioning '" + needle + "'").c_str());
    } catch (const kto::Error& e) {
        const std::string msg = e.what();
        QVERIFY2(msg.find(needle) != std::string::npos, ("expected '" + needle + "' in: " + msg).c_str());
    }
}

}  // namespace kto::test
