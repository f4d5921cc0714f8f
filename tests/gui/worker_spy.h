#pragma once
// QSignalSpy for the signals a worker thread emits. QSignalSpy connects directly, so it appends to
// its list on the emitting thread while the test reads that list on the GUI thread: a data race
// (ThreadSanitizer reports it; a read while the list grows can crash). WorkerSpy lives on the GUI
// thread and is connected queued, as the app's own panels are: each emission is recorded there,
// in order, as QSignalSpy records it (one list of arguments per emission).
#include <QList>
#include <QObject>
#include <QVariant>

#include <type_traits>

namespace kto::test {

class WorkerSpy : public QObject, public QList<QList<QVariant>> {
public:
    template <class Sender, class... Args>
    WorkerSpy(const Sender* sender, void (Sender::*signal)(Args...)) {
        QObject::connect(
            sender, signal, this,
            [this](std::decay_t<Args>... args) { append(QList<QVariant>{QVariant::fromValue(args)...}); },
            Qt::QueuedConnection);
    }
};

}  // namespace kto::test
