#pragma once
// Modal dialogs behind test hooks (KeePassXC's MessageBox::setNextAnswer pattern): a test sets the
// next answer or file name, the call returns it without opening anything, and records what was asked.
#include <QMessageBox>
#include <QString>
#include <QStringList>

class QWidget;

namespace kto::ui {

class MessageBox {
public:
    // The next question/warning/critical/information call returns `answer` without showing a box.
    static void setNextAnswer(QMessageBox::StandardButton answer);
    // Text of the last box asked for (shown or answered by the hook): tests assert on the wording.
    static QString lastText();
    static int shownCount();

    static QMessageBox::StandardButton question(QWidget* parent, const QString& title, const QString& text,
                                                QMessageBox::StandardButtons buttons = QMessageBox::Yes |
                                                                                       QMessageBox::No,
                                                QMessageBox::StandardButton defaultButton = QMessageBox::No);
    static void critical(QWidget* parent, const QString& title, const QString& text);
    static void information(QWidget* parent, const QString& title, const QString& text);
};

class FileDialog {
public:
    // The next get*() call returns `name` (an empty name means "the user cancelled").
    static void setNextFileName(const QString& name);
    static QString getOpenFileName(QWidget* parent, const QString& caption, const QString& dir = {},
                                   const QString& filter = {});
    static QString getSaveFileName(QWidget* parent, const QString& caption, const QString& dir = {},
                                   const QString& filter = {});
    static QString getExistingDirectory(QWidget* parent, const QString& caption, const QString& dir = {});
};

}  // namespace kto::ui
