#pragma once
// The keyboard help overlay (F1 or ?): every main action with its shortcut, built from the actions
// themselves so the list can never drift from what the keys really do.
#include <QList>
#include <QPair>
#include <QString>
#include <QWidget>

class QAction;
class QLabel;

namespace kto::ui {

class HelpOverlay : public QWidget {
    Q_OBJECT
public:
    using Section = QPair<QString, QList<QAction*>>;
    explicit HelpOverlay(QWidget* parent);

    void setSections(const QList<Section>& sections);
    void toggle();
    QString text() const;  // the plain listing, for tests

protected:
    void paintEvent(QPaintEvent* event) override;
    void keyPressEvent(QKeyEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void rebuild();
    QList<Section> sections_;
    QLabel* label_ = nullptr;
};

}  // namespace kto::ui
