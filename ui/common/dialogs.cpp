#include "ui/common/dialogs.h"

#include <QFileDialog>
#include <optional>

namespace kto::ui {
namespace {
// Test hooks only: set by tests on the GUI thread, consumed by the next modal call.
std::optional<QMessageBox::StandardButton> g_next_answer;
std::optional<QString> g_next_file;
QString g_last_text;
int g_shown = 0;

QMessageBox::StandardButton ask(QMessageBox::Icon icon, QWidget* parent, const QString& title,
                                const QString& text, QMessageBox::StandardButtons buttons,
                                QMessageBox::StandardButton defaultButton) {
    g_last_text = text;
    ++g_shown;
    if (g_next_answer) {
        auto a = *g_next_answer;
        g_next_answer.reset();
        return a;
    }
    QMessageBox box(icon, title, text, buttons, parent);
    box.setDefaultButton(defaultButton);
    return static_cast<QMessageBox::StandardButton>(box.exec());
}

std::optional<QString> take_file() {
    auto f = g_next_file;
    g_next_file.reset();
    return f;
}
}  // namespace

void MessageBox::setNextAnswer(QMessageBox::StandardButton answer) { g_next_answer = answer; }
QString MessageBox::lastText() { return g_last_text; }
int MessageBox::shownCount() { return g_shown; }

QMessageBox::StandardButton MessageBox::question(QWidget* parent, const QString& title, const QString& text,
                                                 QMessageBox::StandardButtons buttons,
                                                 QMessageBox::StandardButton defaultButton) {
    return ask(QMessageBox::Question, parent, title, text, buttons, defaultButton);
}

void MessageBox::critical(QWidget* parent, const QString& title, const QString& text) {
    ask(QMessageBox::Critical, parent, title, text, QMessageBox::Ok, QMessageBox::Ok);
}

void MessageBox::information(QWidget* parent, const QString& title, const QString& text) {
    ask(QMessageBox::Information, parent, title, text, QMessageBox::Ok, QMessageBox::Ok);
}

void FileDialog::setNextFileName(const QString& name) { g_next_file = name; }

QString FileDialog::getOpenFileName(QWidget* parent, const QString& caption, const QString& dir,
                                    const QString& filter) {
    if (auto f = take_file()) return *f;
    return QFileDialog::getOpenFileName(parent, caption, dir, filter);
}

QString FileDialog::getSaveFileName(QWidget* parent, const QString& caption, const QString& dir,
                                    const QString& filter) {
    if (auto f = take_file()) return *f;
    return QFileDialog::getSaveFileName(parent, caption, dir, filter);
}

QString FileDialog::getExistingDirectory(QWidget* parent, const QString& caption, const QString& dir) {
    if (auto f = take_file()) return *f;
    return QFileDialog::getExistingDirectory(parent, caption, dir);
}

}  // namespace kto::ui
